from vcli.cli import main

main()
