"""The crypto trading desk: instruments, the client order book, and (to come) RFQ, risk, venues."""
