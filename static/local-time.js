// Shows every <time data-local datetime="…Z"> in the viewer's own time zone. Without JavaScript the
// page keeps the UTC text the server wrote, which says it is UTC.
for (const element of document.querySelectorAll("time[data-local]")) {
  const moment = new Date(element.dateTime);
  if (!Number.isNaN(moment.getTime())) {
    element.textContent = moment.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    element.title = element.dateTime;
  }
}
