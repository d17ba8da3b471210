from tableship.cli.commands import main

main()
