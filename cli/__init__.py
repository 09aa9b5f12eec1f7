"""The ``kerasrecon`` command line (``cli/main.py``), kept outside the library package on purpose.

The command line lives in a top-level ``cli/`` beside ``kerasrecon/``; it is installed as the
package ``kerasrecon_cli`` (``setup.cfg``: ``package_dir``), so the import name cannot clash with
other projects' ``cli`` packages. Keeping it out of ``kerasrecon/`` keeps the rule testable: the
library imports and runs without click (``tests/cli/test_mask_data_cli.py`` checks it), and the CLI
holds no logic of its own — it parses options into ``kerasrecon.config`` and calls the library.
"""
