from gitkube.cli import entry

entry()
