"""The operator and analyst command line, and the scripts that install and start the engines."""
