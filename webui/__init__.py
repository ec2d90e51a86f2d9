"""The owner's dashboard and JSON API. Imports the domain packages; they never import it."""
