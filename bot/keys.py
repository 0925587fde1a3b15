"""Typed keys for what the app holds; filled by cleanup contexts in ``bot.app``."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from bot.action_endpoint import ActionEndpoint
from bot.agent_api import AgentAPI
from bot.channels.web import WebChannel
from bot.channels.webhooks import WebhookEndpoint
from bot.console.access import Access
from bot.console.account import Account
from bot.console.agent import Console
from bot.console.articles import ArticleStore
from bot.console.dashboard import Dashboard
from bot.console.editor import Editor
from bot.console.emergency import EmergencyAPI
from bot.delivery import Dispatcher
from bot.hub import Hub
from bot.kb_api import KnowledgeAPI
from bot.limits import WindowFactory
from bot.metrics import MetricsEndpoint
from bot.nlu import RasaClient
from bot.pages import Pages
from bot.pipeline import Pipeline
from bot.settings import Settings
from bot.store.base import Store
from bot.turns import Turns
from knowledge_base.live import LiveKnowledgeBase

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
HTTP = web.AppKey("http", aiohttp.ClientSession)
KB = web.AppKey("kb", LiveKnowledgeBase)
RASA = web.AppKey("rasa", RasaClient)
PIPELINE = web.AppKey("pipeline", Pipeline)
WEB = web.AppKey("web_channel", WebChannel)
AGENT_API = web.AppKey("agent_api", AgentAPI)
ACTIONS = web.AppKey("action_endpoint", ActionEndpoint)
PAGES = web.AppKey("pages", Pages)
WEBHOOKS = web.AppKey("webhooks", WebhookEndpoint)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
ACCESS = web.AppKey("access", Access)
ACCOUNT = web.AppKey("account", Account)
CONSOLE = web.AppKey("console", Console)
ARTICLES = web.AppKey("articles", ArticleStore)
EDITOR = web.AppKey("editor", Editor)
METRICS = web.AppKey("metrics", MetricsEndpoint)
DASHBOARD = web.AppKey("dashboard", Dashboard)
KB_API = web.AppKey("kb_api", KnowledgeAPI)
EMERGENCY = web.AppKey("emergency", EmergencyAPI)
HUB = web.AppKey("hub", Hub)  # a RedisHub when [scale] redis_url is set
RATE_WINDOWS = web.AppKey[WindowFactory]("rate_windows")  # the limits' windows ([scale])
TURNS = web.AppKey[Turns]("turns")  # a conversation's bot turns, one at a time ([scale])
