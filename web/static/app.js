// Marks that scripts run, so fields switched off by visible_if are hidden only when htmx can bring them back.
document.documentElement.classList.add("js");
