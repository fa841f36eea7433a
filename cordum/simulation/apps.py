from django.apps import AppConfig


class SimulationConfig(AppConfig):
    name = "cordum.simulation"
    label = "simulation"
