"""``python -m runner.runs``: see runner.records.runs."""
from runner.records.runs import main

if __name__ == "__main__":
    main()
