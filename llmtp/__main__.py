"""`python -m llmtp` entry point."""

from llmtp.cli.main import run

if __name__ == "__main__":
    run()
