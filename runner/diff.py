"""``python -m runner.diff``: see runner.records.diff."""
from runner.records.diff import main

if __name__ == "__main__":
    main()
