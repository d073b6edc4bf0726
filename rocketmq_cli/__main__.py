"""``python -m rocketmq_cli``: the ``rocketmq`` command."""

from rocketmq_cli import main

main()
