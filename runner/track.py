"""``python -m runner.track``: see runner.records.track."""
from runner.records.track import main

if __name__ == "__main__":
    main()
