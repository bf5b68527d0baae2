"""Setup guides: how to copy a mailbox's mail to its receiver address without altering it.

`threads-receiver mailbox instructions EMAIL --provider P` prints one guide filled in with
the mailbox's address; docs/setup-guides.md is the same text for an example mailbox
(tests/test_instructions.py keeps the two identical; `python -m receiver.instructions`
rewrites the file).
"""

from __future__ import annotations

from pathlib import Path

PROVIDERS = (
    "gmail",
    "outlook",
    "exchange",
    "sieve",
    "postfix",
    "migrationwiz",
    "thunderbird",
    "outlook-desktop",
    "apple-mail",
    "imapsync",
    "mbsync",
    "offlineimap",
    "import",
)

TITLES = {
    "gmail": "Gmail and Google Workspace: automatic forwarding",
    "outlook": "Outlook.com and Outlook on the web: a redirect rule",
    "exchange": "Exchange and Microsoft 365 (administrator): a mail flow rule",
    "sieve": "Sieve (Dovecot, Fastmail, Proton Bridge, cPanel...): redirect :copy",
    "postfix": "Postfix (the mail server itself): recipient_bcc_maps",
    "migrationwiz": "Bulk copy of old mail with MigrationWiz (an IMAP destination)",
    "thunderbird": "Thunderbird: add the receiver as an IMAP account and drag mail in",
    "outlook-desktop": "Outlook (desktop): add the receiver as an IMAP account and drag mail in",
    "apple-mail": "Apple Mail: add the receiver as an IMAP account and drag mail in",
    "imapsync": "imapsync: copy a mailbox from its IMAP server to the receiver",
    "mbsync": "mbsync (isync): push a local Maildir or an IMAP mailbox to the receiver",
    "offlineimap": "offlineimap: copy a mailbox from its IMAP server to the receiver",
    "import": "Old mail from a file export (mbox, Maildir, .eml): the receiver's import",
}

# Every IMAP guide starts from the account the receiver issues for the mailbox.
_ACCOUNT = """The account: server {imap_host}, port {imap_port}, SSL/TLS from the start{starttls},
normal password. User name {email} (or {address}); the password is the one the
receiver issues, never the mailbox's own:

    threads-receiver mailbox credentials {email}
"""

# What every IMAP guide says about the receiver's side of IMAP.
_IMAP_NOTES = """Whatever comes in over IMAP goes through the same checks, policy and threading as a
redirected copy, and is kept exactly as the client sent it. A refused message gets a
NO naming what changed; a storage fault NO [UNAVAILABLE]: the client retries. The
folder a message was copied into is kept as a label (`messages show` lists it), and
copied "Sent Items", "Deleted Items", "Junk E-mail" or "[Gmail]/Sent Mail" folders show
in mail clients as the sent, deleted and junk folders they are. Deleting or moving a
message over IMAP only hides it from that folder: the archive itself is never deleted
over IMAP (retention and `mailbox remove` are the administrator's)."""

GUIDES = {
    "gmail": """\
1. In Gmail open Settings (the gear) → See all settings → Forwarding and POP/IMAP.
2. Click "Add a forwarding address" and enter
       {address}
   Gmail sends a confirmation message with a code to that address. The receiver
   accepts it whatever the policy says and keeps it for you: run
       threads-receiver mailbox show {email}
   and copy the confirmation code (or open the link) it shows.
3. Back in Gmail enter the code, click Verify, then choose
   "Forward a copy of incoming mail to {address}" and
   "keep Gmail's copy in the Inbox". Save Changes.
4. To copy only some mail, leave forwarding disabled and create a filter instead
   (search → Create filter → "Forward it to" {address}).

Gmail forwards the message as it arrived: the original headers and DKIM signatures
stay intact, and Gmail adds an ARC seal the receiver checks too. Google Workspace
administrators may have to allow automatic forwarding first (Admin console → Apps →
Google Workspace → Gmail → End User Access → Automatic forwarding).""",
    "outlook": """\
1. In Outlook on the web open Settings → Mail → Rules → "Add new rule".
2. Name it "copy to threads-receiver"; condition: "Apply to all messages".
3. Action: "Redirect to" and enter
       {address}
   Use Redirect, not "Forward to": Forward sends a new message that wraps or quotes
   the original, so its signatures no longer verify and the copy counts as altered.
4. Tick "Stop processing more rules" only if you want nothing else to happen, then Save.

Microsoft 365 blocks automatic external forwarding by default; if the rule does not
fire, ask your administrator to allow it for you (Microsoft Defender → Policies →
Anti-spam → outbound policy → Automatic forwarding rules: On), or use the
administrator's mail flow rule (see the "exchange" guide) instead.""",
    "exchange": """\
An administrator can copy a mailbox's mail without any rule in the user's mailbox:
a mail flow (transport) rule that adds a blind copy leaves the message untouched.

1. Exchange admin center → Mail flow → Rules → Add a rule → Create a new rule.
2. Name: "threads-receiver {email}".
   Apply this rule if: "The recipient is" {email}
   (add "The sender is" {email} as a second rule to copy sent mail too).
3. Do the following: "Add recipients" → "to the Bcc box" →
       {address}
4. Save and enable the rule. The same in Exchange Online PowerShell:
       New-TransportRule -Name "threads-receiver {email}" -SentTo "{email}" -BlindCopyTo "{address}"

Do not use "Forward the message for approval" or "Redirect the message to" rules with
a disclaimer action, and avoid journaling for this: a journal report wraps the message
in a new one. If outbound mail goes through a smart host that rewrites messages
(disclaimers, link rewriting), add an exception for the receiver domain.""",
    "sieve": """\
Add this to the mailbox's Sieve script (ManageSieve client, webmail filter editor,
or ~/.dovecot.sieve), above any rule that ends processing:

    require ["copy"];
    redirect :copy "{address}";

`:copy` keeps the message in the mailbox as well. `redirect` resends the message
unchanged with a new envelope, so its signatures stay valid. Do not use a vacation
or "forward as attachment" action for this. Servers without the copy extension
need `redirect "{address}"; keep;` instead.""",
    "postfix": """\
On the Postfix server that delivers {email}'s mail, copy every message sent to it:

    # /etc/postfix/main.cf
    recipient_bcc_maps = hash:/etc/postfix/recipient_bcc

    # /etc/postfix/recipient_bcc
    {email}    {address}

    postmap /etc/postfix/recipient_bcc && postfix reload

For mail the user sends, add `sender_bcc_maps` with the same line. `always_bcc =
{address}` copies every message of the whole server into this one mailbox. Postfix
makes the copy in its cleanup daemon before delivery, so the copy is the very
message delivered locally; keep content filters that rewrite messages (disclaimers,
footers) after the copy or exempt the receiver domain. The receiver must be reachable
on port 25 from this server (its MX record, or a transport_maps entry).""",
    "migrationwiz": _ACCOUNT
    + """
For many mailboxes at once, make the CSV MigrationWiz imports (email, server, port,
username, password; credentials are issued to every mailbox that has none):

    threads-receiver mailbox credentials --all --csv > receiver-users.csv

1. In MigrationWiz create a Mailbox Migration project. Source: the old mail system.
   Destination: "IMAP", server {imap_host}, port {imap_port}, "Use SSL" ticked.
2. Add the users (Bulk Add → import receiver-users.csv): destination login name
   {email}, destination password from the CSV.
3. Start a Full Migration. An interrupted pass is simply started again: messages
   already copied are found by MigrationWiz and, byte for byte, by the receiver too.

"""
    + _IMAP_NOTES,
    "thunderbird": _ACCOUNT
    + """
1. Account Settings → Account Actions → Add Mail Account. Enter your name, {email}
   and the password above, then "Configure manually": incoming IMAP, {imap_host},
   port {imap_port}, SSL/TLS, Normal password, username {email}. Outgoing: choose
   any existing server (nothing is sent through the receiver). Done.
2. Select messages (or a whole folder) in the old account and drag them onto the
   receiver account's Inbox or any folder you create there. Thunderbird copies them
   with IMAP APPEND; hold Ctrl (Cmd on a Mac) while dropping so the old account keeps
   its copy ("copy", not "move").

"""
    + _IMAP_NOTES,
    "outlook-desktop": _ACCOUNT
    + """
1. File → Add Account → enter {email} → Advanced options → "Let me set up my
   account manually" → IMAP. Incoming mail: {imap_host}, port {imap_port},
   encryption SSL/TLS. Outgoing mail: any server (nothing is sent through the
   receiver). Enter the password above.
2. In the folder pane, select messages in the old mailbox and drag them with the
   right mouse button onto the receiver account's Inbox → "Copy". Outlook copies
   each message as it holds it; messages Outlook rebuilt from Exchange can lose their
   original headers and be judged unverifiable.

"""
    + _IMAP_NOTES,
    "apple-mail": _ACCOUNT
    + """
1. Mail → Settings → Accounts → + → Other Mail Account. Enter {email} and the
   password above; when asked, account type IMAP, incoming server {imap_host},
   user name {email}; outgoing server: any. Under Server Settings untick
   "Automatically manage connection settings" and set port {imap_port}, TLS/SSL on.
2. Select messages in the old mailbox and Option-drag them onto the receiver
   account's Inbox (Option copies instead of moving).

"""
    + _IMAP_NOTES,
    "imapsync": _ACCOUNT
    + """
    imapsync --host1 OLD-IMAP-SERVER --user1 {email} --password1 'OLD-PASSWORD' \\
             --host2 {imap_host} --port2 {imap_port} --ssl2 \\
             --user2 {email} --password2 'RECEIVER-PASSWORD' \\
             --nofoldersizes --noexpungeaftereach --delete2 0

Run the same command again after an interruption: imapsync skips what is there by
Message-ID, and a byte-identical copy is the receiver's duplicate anyway. Never use
--delete1 to move mail: the receiver is a copy.

"""
    + _IMAP_NOTES,
    "mbsync": _ACCOUNT
    + """
An ~/.mbsyncrc that pushes a local Maildir (or, with an IMAPStore instead of the
MaildirStore, another IMAP server) to the receiver:

    IMAPAccount receiver
    Host {imap_host}
    Port {imap_port}
    User {email}
    PassCmd "cat ~/.receiver-password"
    SSLType IMAPS

    IMAPStore receiver
    Account receiver

    MaildirStore local
    Path ~/Mail/
    Inbox ~/Mail/INBOX
    SubFolders Verbatim

    Channel push
    Far :receiver:
    Near :local:
    Patterns *
    Sync Push
    Create Far
    SyncState *

then `mbsync -a`, again after an interruption (its state files remember what was
copied). mbsync adds one line of its own to each message it copies (X-TUID, its
marker to find the message after a crash); the receiver keeps that line too.

"""
    + _IMAP_NOTES,
    "offlineimap": _ACCOUNT
    + """
An ~/.offlineimaprc that copies IMAP to IMAP:

    [general]
    accounts = migrate

    [Account migrate]
    localrepository = receiver
    remoterepository = old

    [Repository old]
    type = IMAP
    remotehost = OLD-IMAP-SERVER
    remoteuser = {email}
    readonly = True
    sslcacertfile = OS-DEFAULT

    [Repository receiver]
    type = IMAP
    remotehost = {imap_host}
    remoteport = {imap_port}
    ssl = yes
    sslcacertfile = OS-DEFAULT
    remoteuser = {email}

then `offlineimap -o`, again after an interruption (it asks for both passwords; without
an sslcacertfile it refuses TLS). The receiver offers UIDPLUS, so offlineimap does not
add its X-OfflineIMAP header to the copies. It does pass each message through Python's
email package, which rewrites a few rare forms: a header field with no space after its
colon, or an empty one, gains a space; a multipart message that ends right after its
closing boundary gains a line break. Such a copy differs from the old server's, and may
be judged altered.

"""
    + _IMAP_NOTES,
    "import": """\
Old mail is copied once; new mail arrives through one of the rules above.

From a file export (mbox from Google Takeout, Thunderbird or an IMAP backup tool, a
Maildir, or a folder of .eml files), run on the receiver:

    threads-receiver import PATH --mailbox {email}

Every message goes through the same checks, policy and threading as a pushed copy.
Run it again after an interruption: what is stored already is skipped.

From a bulk copy tool that delivers over SMTP (imapsync piped to sendmail, a
journaling archive export): issue the tool its own SMTP AUTH credential with

    threads-receiver mailbox credentials {email}

and point the job at the receiver's MX host, port 587 (STARTTLS) or 465 (TLS), with
that username and password, recipient {address}. The tool must send each message's
original bytes (no re-encoding, no added footer); a job that rebuilds messages
produces copies the receiver judges altered.""",
}

COMMON = """\
What the receiver refuses, and why

- Mail to any other domain than the receiver's: 550 5.7.1 relaying denied.
- An unknown or rotated-away receiver address: 550 5.1.1. After
  `threads-receiver mailbox rotate {email}` update the rule within the grace period.
- A disabled mailbox: 550 5.2.1.
- A copy judged altered (a "Forward" that wraps or rewrites the message, a footer or
  subject tag added on the way, headers rewritten) is quarantined or refused with
  550 5.7.1, as the mailbox's policy says; the reply names what changed.
- Storage trouble on the receiver: 451 4.3.0, so the sending server keeps the message
  and retries; nothing is lost.
- Over IMAP the same refusals are a NO with the same sentence, and storage trouble
  is NO [UNAVAILABLE].

Check the first copy

1. Send a message to {email} from another account.
2. On the receiver run
       threads-receiver messages list --mailbox {email}
       threads-receiver messages show ID
   The delivery line should say "verdict unaltered" (a signature covering the
   author's headers verified). "unverifiable" means the original carried no
   signature the receiver could check; "altered" lists what changed, which usually
   means the rule forwards instead of redirecting."""


def guide(
    provider: str,
    email: str,
    address: str,
    imap_host: str,
    imap_port: int = 993,
    starttls_port: int | None = 143,
) -> str:
    """One provider's steps, then what is refused and how to check the first copy.
    `starttls_port`: imap.listen's port, None when the receiver has no such listener."""
    starttls = f" (or port {starttls_port} with STARTTLS)" if starttls_port else ""
    body = GUIDES[provider].format(
        email=email, address=address, imap_host=imap_host, imap_port=imap_port, starttls=starttls
    )
    common = COMMON.format(email=email, address=address)
    return f"{TITLES[provider]}\n\n{body}\n\n{common}\n"


EXAMPLE_EMAIL = "alice@corp.example"
EXAMPLE_ADDRESS = "alice-<token>@push.example.com"
EXAMPLE_HOST = "push.example.com"


def docs_markdown() -> str:
    """docs/setup-guides.md: every guide for an example mailbox."""
    parts = [
        "# Setting up a copy rule, or copying mail in over IMAP\n",
        "Each guide below is what `threads-receiver mailbox instructions EMAIL --provider P`",
        f"prints, shown here for the mailbox {EXAMPLE_EMAIL} whose receiver address is",
        f"`{EXAMPLE_ADDRESS}` (`threads-receiver mailbox show EMAIL` prints the real one),",
        f"and whose receiver answers IMAP at {EXAMPLE_HOST}:993.",
        "",
        "Contents: " + ", ".join(f"[{p}](#{p})" for p in PROVIDERS) + ".",
        "",
    ]
    for p in PROVIDERS:
        parts += [
            f'<a id="{p}"></a>',
            f"## {p}",
            "",
            "```text",
            guide(p, EXAMPLE_EMAIL, EXAMPLE_ADDRESS, EXAMPLE_HOST).rstrip("\n"),
            "```",
            "",
        ]
    return "\n".join(parts)


DOCS_PATH = Path(__file__).resolve().parent.parent / "docs" / "setup-guides.md"

if __name__ == "__main__":
    DOCS_PATH.write_text(docs_markdown())
    print(f"wrote {DOCS_PATH}")
