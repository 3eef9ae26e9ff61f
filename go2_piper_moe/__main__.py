"""``python -m go2_piper_moe <script> [args]``: run ``scripts/<script>.py`` of the installed app (:mod:`.cli`)."""

from go2_piper_moe.cli import main

if __name__ == "__main__":
    main()
