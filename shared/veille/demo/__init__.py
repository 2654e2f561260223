"""``veille demo``: a scripted crisis about a fictional brand, played by a loopback feed server."""

from veille.demo.feed import DemoFeedServer
from veille.demo.script import DEMO_CONFIG, SCRIPT, WATCH, ScriptedItem, demo_config

__all__ = ["DEMO_CONFIG", "SCRIPT", "WATCH", "DemoFeedServer", "ScriptedItem", "demo_config"]
