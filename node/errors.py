"""The few exception types sunrig raises across module boundaries."""


class ConfigError(Exception):
    """A config file is unreadable or invalid; the message names file, key and what is allowed."""

    def __init__(self, file: str, key: str, problem: str):
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")
