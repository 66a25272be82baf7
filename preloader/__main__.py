from preloader.cli import main

raise SystemExit(main())
