"""A simulated fleet of OCPP 1.6J and 2.0.1 chargers: the demo's chargers
(`manage.py simulate_chargers`) and the client the tests drive (`simulator.fleet`). A tool that
talks to the gateway over websockets like a real charger, not a part of the gateway."""
