from runner.app import program

program()
