"""Bank-to-wallet: partner apps (an exchange) reach a customer's accounts with the customer's consent."""
