"""The `sunrig` command, one module per family of subcommands.

`entry` dispatches before anything heavy is imported (the Akash bid-price script must answer in
milliseconds); `commands` builds the parser and runs the agent, the demo and the small commands;
`akash`, `probe` and `simulate` add their subcommands to it. Nothing outside this package imports
it: the CLI sits on top of the agent, never under it.
"""
