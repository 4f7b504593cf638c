"""The simulated Billing resources: customers, invoices, items and payments, each as Zoho keeps them."""
