"""Exchange-rate sources at the edge: the ECB history bundled with the installation and the one fetched from
the network (`retention rates update`). Parsing and lookups are pure and live in metrics/rates.py."""

# The ECB's published history of every reference rate since 1999 (the default of RETENTION_RATES_URL); here,
# not in ecb.py, so the settings can name it without importing the HTTP client.
ECB_HISTORY_URL = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.zip"
