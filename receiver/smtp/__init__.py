"""The SMTP/LMTP edge: aiosmtpd, limits, RCPT → mailbox, DATA → the pipeline → a reply."""
