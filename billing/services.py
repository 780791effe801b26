"""The billing app's domain error.

Prices live in `prices` (the price in force, what a session costs, setting and correcting a
price). The expense notes have their own modules, by concern: `issuing` (a month's notes, in one
short transaction), `rendering` (each note's PDF), `dispatch` (e-mails to finance and drivers),
`export_jobs` (ZIP exports) and `scheduling` (the month-end run and the hourly check). They run
inside the community's scope (a request, a `CommunityTask`) and never switch scoping off."""


class BillingError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.message = message
