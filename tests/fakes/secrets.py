"""The environment a gateway needs to enable every webhook platform against the fakes: each
fake's own test secrets, under the variable names the adapters read."""

from tests.fakes import meta, slack, telegram, twilio

GATEWAY_ENV = {
    "PROMPTLY_TELEGRAM_BOT_TOKEN": telegram.BOT_TOKEN,
    "PROMPTLY_TELEGRAM_SECRET_TOKEN": telegram.SECRET_TOKEN,
    "PROMPTLY_SLACK_SIGNING_SECRET": slack.SIGNING_SECRET,
    "PROMPTLY_SLACK_BOT_TOKEN": slack.BOT_TOKEN,
    "PROMPTLY_WHATSAPP_APP_SECRET": meta.WHATSAPP_SECRET,
    "PROMPTLY_WHATSAPP_ACCESS_TOKEN": meta.WHATSAPP_TOKEN,
    "PROMPTLY_WHATSAPP_VERIFY_TOKEN": meta.VERIFY_TOKEN,
    "PROMPTLY_MESSENGER_APP_SECRET": meta.MESSENGER_SECRET,
    "PROMPTLY_MESSENGER_PAGE_TOKEN": meta.PAGE_TOKEN,
    "PROMPTLY_MESSENGER_VERIFY_TOKEN": meta.VERIFY_TOKEN,
    "PROMPTLY_TWILIO_ACCOUNT_SID": twilio.ACCOUNT_SID,
    "PROMPTLY_TWILIO_AUTH_TOKEN": twilio.AUTH_TOKEN,
}
