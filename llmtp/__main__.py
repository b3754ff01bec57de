"""`python -m llmtp` entry point."""

from llmtp.cli.entry import run

if __name__ == "__main__":
    run()
