"""The IMAP edge: a mail client's drag-and-drop and bulk-copy tools APPEND into the same
pipeline as SMTP, and read back what they appended (pymap speaks the protocol)."""
