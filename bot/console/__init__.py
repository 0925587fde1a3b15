"""The pages people work in: sign-in and accounts, the agent console, the KB editor."""
