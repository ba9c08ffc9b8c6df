"""The command line: the one ``@hydra.main`` with its callbacks and resolvers, and one line and an exit status for
every error (app.py); --help and the messages for composition and launcher errors (messages.py)."""
