from andchain.cli import main

main()
