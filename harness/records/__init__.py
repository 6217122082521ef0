"""What is kept: the results schema and its files, the environment every row carries, the
known framework bugs (as data), and the summary tables printed from rows."""
