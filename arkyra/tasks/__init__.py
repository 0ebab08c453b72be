"""Prefect tasks wrapping providers: pull, generate, render, synthesize, push."""
