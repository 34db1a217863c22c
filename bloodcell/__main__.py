from bloodcell.cli import main

raise SystemExit(main())
