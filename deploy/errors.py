"""The runner's one error type: a message of one line naming the file, value or field and what was expected."""


class DeployError(ValueError):
    """An export folder, image, prompt or policy the runner cannot use."""
