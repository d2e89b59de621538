"""What comes back after a message was sent: bounces (DSNs), auto-replies and
complaints, received by ``notifier inbound`` and matched to messages by VERP."""
