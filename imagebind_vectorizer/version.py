"""The package version, in one leaf module: the runtime reports it in /meta without importing the
package root (which re-exports it, and lazily the runtime)."""

__version__ = "0.1.0"
