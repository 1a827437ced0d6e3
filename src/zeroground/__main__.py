from zeroground.cli import main

main()
