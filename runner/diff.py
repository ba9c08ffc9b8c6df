"""``python -m runner.diff A B``: what differs between two run dirs (runner.records.diff)."""
from runner.records.diff import main

if __name__ == "__main__":
    main()
