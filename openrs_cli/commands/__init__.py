"""Thin CLI modules: parse arguments, call one library function, print. No logic here."""
