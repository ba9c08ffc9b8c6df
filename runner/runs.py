"""``python -m runner.runs [DIR ...]``: every run under outputs/ and multirun/ as one table (runner.records.listing)."""
from runner.records.listing import main

if __name__ == "__main__":
    main()
