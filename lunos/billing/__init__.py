"""Stripe: Checkout for credits and subscriptions, the Customer Portal, and webhooks."""
