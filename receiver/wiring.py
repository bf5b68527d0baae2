"""The one place a config becomes the parts that store and thread.

`serve`, `import` and the CLI commands that thread (`quarantine release`) get their
subject rule, parse budget and pipeline (writer + verifier + parse workers) from here,
so no command can forget a [threads] or [parse] key. `Stack.reconfigure` hands a
reloaded config to every part that reads a key which takes effect without a restart.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from peewee import Database

from receiver import logs
from receiver.config import Config
from receiver.parse.worker import Budget, ParseWorkers
from receiver.pipeline import Pipeline
from receiver.stages import Stage
from receiver.store.deliveries import Writer
from receiver.threads.subject import SubjectRule
from receiver.verify import Verifier


def subject_rule(config: Config) -> SubjectRule:
    return SubjectRule(config.threads.subject_join, config.threads.subject_window_days)


def parse_budget(config: Config) -> Budget:
    p = config.parse
    return Budget(
        timeout=p.timeout,
        max_depth=p.max_depth,
        max_parts=p.max_parts,
        max_bytes=p.max_bytes,
        max_memory=p.max_memory,
    )


@dataclass
class Stack:
    """Writer, verifier, parse workers and the pipeline over them, for one database."""

    writer: Writer
    verifier: Verifier
    parser: ParseWorkers
    pipeline: Pipeline

    @property
    def stages(self) -> list[Stage]:
        """What the watchdog watches (receiver.stages)."""
        return [self.writer.stage, self.verifier.stage, self.parser.stage]

    def reconfigure(self, config: Config) -> None:
        """A reload: [threads], [policy], [dns], receiver.domains and authserv_id apply to
        the next copy. [parse] and [database] are fixed at start (workers, connections)."""
        self.writer.subject_rule = subject_rule(config)
        self.verifier.reconfigure(config)
        self.pipeline.config = config

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.writer.stop)
        await self.verifier.close()
        await loop.run_in_executor(None, self.parser.close)


async def build(config: Config, db: Database, executor: ThreadPoolExecutor) -> Stack:
    """The pipeline every copy goes through, wired from `config` (schema already checked)."""
    loop = asyncio.get_running_loop()
    writer = Writer(db, config.database.batch_max, subject_rule(config))
    verifier = Verifier(config)
    # Starting the worker processes blocks for a moment: off the loop.
    parser = await loop.run_in_executor(
        None, lambda: ParseWorkers(parse_budget(config), config.parse.workers, logs.for_child())
    )
    pipeline = Pipeline(config, writer, verifier, executor, parser=parser.parse)
    return Stack(writer, verifier, parser, pipeline)
