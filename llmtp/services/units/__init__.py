"""llmtp serve as a system service: systemd units and launchd agents."""
