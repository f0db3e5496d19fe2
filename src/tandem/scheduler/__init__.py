"""The one durable scheduler: actor reminders, workflow timers and jobs share it."""
