"""The single validator: web forms, inline checks, Excel rows and the API all call `clean_record`."""
from engine.validation.runner import CleanResult, clean_field, clean_record

__all__ = ["CleanResult", "clean_field", "clean_record"]
