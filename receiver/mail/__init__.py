"""The one reader of raw mail: where the header block ends, its fields, bare CR/LF
defects, and the MIME walk with its budget. Every other package takes a `RawMail` (or
what it needs from one) instead of splitting headers or walking MIME itself.

The bottom floor: it imports nothing else from receiver.
"""

from receiver.mail.fields import Field, decode_text, unfold
from receiver.mail.message import RawMail, read

__all__ = ["Field", "RawMail", "decode_text", "read", "unfold"]
