"""Shared bases every resource package builds on."""
