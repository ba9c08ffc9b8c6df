"""``python -m runner.report SWEEP_DIR``: a sweep's report.md, report.csv, plots and HParams written again
(runner.sweeps.report)."""
from runner.sweeps.report import main

if __name__ == "__main__":
    main()
