"""Exit statuses of the CLI (README "Exit statuses"): sysexits.h where one fits.

1 is an error the printed line explains (no such mailbox, a file exists already...);
`verify` and `status` give 1 and 2 their own meanings, so scripts tell a usage error (64)
from a verdict.
"""

EX_OK = 0
EX_ERROR = 1
EX_USAGE = 64  # a mistyped command, option or value
EX_DATAERR = 65  # `import -`: what was piped in is not a message
EX_UNAVAILABLE = 69  # a port in use; `import -`: the message was rejected
EX_SOFTWARE = 70  # a bug: "unexpected ..."
EX_CANTCREAT = 73  # an output file or folder that cannot be written
EX_TEMPFAIL = 75  # `import -`: try again later
EX_CONFIG = 78  # a config file or override that cannot be used
