from confdistill.cli.main import main

raise SystemExit(main())
