from shim.entry import main

main()
