from runner.cli.app import program

program()
