from virnucpro_core.cli import main

main()
